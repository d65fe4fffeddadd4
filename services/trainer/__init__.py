"""The Ray trainer: actors that learn from Kafka partitions, averaged and checkpointed."""
