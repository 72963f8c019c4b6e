"""The FAISS candidate index: build, persist, load, batched search, upsert and delete.

GPU or CPU is chosen once, at start; nothing here knows about streams or Kafka.
"""
