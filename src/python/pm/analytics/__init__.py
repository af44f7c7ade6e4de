"""Analytics: consumes patient events, keeps aggregates in its own database, serves them over HTTP."""
