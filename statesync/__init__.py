"""statesync: resumable, observable, retry-safe chunked API syncs."""
