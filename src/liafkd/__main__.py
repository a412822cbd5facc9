import sys

from liafkd.cli.main import main

sys.exit(main())
