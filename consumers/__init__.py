"""The Kafka consumer services of segtag: the tagger and the indexer."""
