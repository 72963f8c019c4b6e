"""The stream processor.

The Kafka-free engine core that turns a micro-batch of events into recommendations, and
around it everything that touches Kafka at run time: the wire codec, recorded streams,
replay and record, topics, the Faust app, agents, tables and HTTP views.
"""
