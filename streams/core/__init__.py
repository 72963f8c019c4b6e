"""The engine core: a micro-batch of events in, recommendations out — no Kafka in it.

The Faust agent, the training-example logger and the prequential evaluator all call
this same code, so features are computed exactly as served.
"""
