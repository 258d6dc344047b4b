"""Feature store: per-video features cached on disk, keyed by content, one table per extractor config.

This package must stay free of torch and of ``vqstack.extract``: extractors write into it, fusion reads
from it, and both can be used without the other (imports flow extract -> features <- fusion).
"""

from __future__ import annotations

from vqstack.features.content_key import KeyCache, content_key
from vqstack.features.lock import WriterLock
from vqstack.features.records import VideoFeatures
from vqstack.features.store import FeatureStore, table_name
from vqstack.features.table import Table, TableInfo

__all__ = [
    "FeatureStore",
    "KeyCache",
    "Table",
    "TableInfo",
    "VideoFeatures",
    "WriterLock",
    "content_key",
    "table_name",
]
