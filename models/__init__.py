"""Learning and scoring: item embeddings, teacher and distilled student rerankers,
ONNX export with parity checks, and the ONNX scorer used at run time.

Works on feature matrices; knows nothing of streams or Kafka.
"""
