"""Test doubles for code built on vlserve (and for vlserve's own tests). Nothing here is used by the
service itself: :class:`FakeEngine` stands in for a model where the model is not what is tested."""

from vlserve.testing.fake_engine import FakeEngine, schema_instance

__all__ = ["FakeEngine", "schema_instance"]
