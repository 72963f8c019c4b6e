"""streamrec: a real-time streaming personalization engine.

The root package ties the code folders together: the CLI, the one settings object,
datasets, training and evaluation. The engine itself lives in ``streamrec.streams``,
candidate retrieval in ``streamrec.index`` and learned models in ``streamrec.models``.
"""

__version__ = "0.1.0"
