from shared.db.base import NAMING_CONVENTION, Money, UtcDateTime, new_metadata, utcnow
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.uow import UnitOfWork

__all__ = [
    "NAMING_CONVENTION",
    "Money",
    "UnitOfWork",
    "UtcDateTime",
    "make_engine",
    "make_sessionmaker",
    "new_metadata",
    "utcnow",
]
