"""``streamrec train``: where the engine core and the models meet.

The training stream is replayed through the engine core itself (``Engine.prepare``), so
the reranker learns from exactly the candidates and feature rows the worker will serve;
then the teacher is trained, the student distilled from it, both checked on held-out
events, and the student exported to ONNX with its metadata and an int8 variant.
"""
