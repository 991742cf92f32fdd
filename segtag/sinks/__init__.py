"""Where the tagger's results go: Redis (:mod:`.redis_sink`) and Kafka (:mod:`.kafka_sink`)."""
