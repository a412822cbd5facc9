"""`liafkd bench`: methods x seeds x datasets, their report, and their cost."""
