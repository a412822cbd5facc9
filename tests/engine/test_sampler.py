from hypothesis import given
from hypothesis import strategies as st

from liafkd.engine.sampler import ResumableSampler


def test_same_seed_and_epoch_same_order_and_epochs_differ():
    a, b = ResumableSampler(20, seed=3), ResumableSampler(20, seed=3)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    assert sorted(i for i, _ in b) == list(range(20))


def test_set_start_skips_exactly_once():
    s = ResumableSampler(10, seed=0)
    full = list(s)
    s.set_start(4)
    assert len(s) == 6
    assert list(s) == full[4:]
    assert list(s) == full


@given(n=st.integers(1, 50), world=st.integers(1, 4), seed=st.integers(0, 100))
def test_ranks_cover_every_sample_with_equal_counts(n, world, seed):
    parts = [list(ResumableSampler(n, seed, rank=r, world_size=world)) for r in range(world)]
    assert len({len(p) for p in parts}) == 1
    assert {i for part in parts for i, _ in part} == set(range(n))
