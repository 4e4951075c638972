from notifier_common.db import metadata_for
from sqlalchemy.orm import DeclarativeBase

SCHEMA = "notifier"


class Base(DeclarativeBase):
    metadata = metadata_for(SCHEMA)
