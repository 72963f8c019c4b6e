"""The FAISS candidate index: build, persist, load, batched search, upsert and delete.

GPU or CPU is chosen once, at start; nothing here knows about streams or Kafka.
"""

from streamrec.index.candidate import CandidateIndex, IndexStats, SearchResult, build_index
from streamrec.index.params import IndexParams
from streamrec.index.persist import load_index

__all__ = [
    "CandidateIndex",
    "IndexParams",
    "IndexStats",
    "SearchResult",
    "build_index",
    "load_index",
]
