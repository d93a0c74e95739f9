"""The runtime: workers that run one stage each, over Kafka or in memory."""
