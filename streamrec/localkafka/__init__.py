"""streamrec's own single-node Apache Kafka, assembled from Maven Central and run locally.

``LocalKafka(settings).start()`` is what ``streamrec kafka start``, the demo and the test
session fixture all call, so every one of them runs the very same broker.
"""

from streamrec.localkafka.dist import LocalKafkaError
from streamrec.localkafka.manager import KafkaStatus, LocalKafka, cluster_answers

__all__ = ["KafkaStatus", "LocalKafka", "LocalKafkaError", "cluster_answers"]
