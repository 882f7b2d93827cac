"""Rewards for trainer tests: the tiny random model earns no R1 reward, so these give every group spread."""

from types import SimpleNamespace


class Spread:
    """Distinct characters of the response / 10."""

    def __call__(self, responses, golds, metas=None):
        return SimpleNamespace(components={"total": [len(set(r)) / 10 for r in responses]}, counts={})

    def close(self):
        pass
