"""Near-duplicate detection that scales near-linearly: word n-grams, exact TF-IDF cosine with prefix
filtering, and blocked dense search over sentence embeddings. Plain functions over arrays; no Ray here."""
