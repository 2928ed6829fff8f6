"""Semantic queries at run time: where they run, how answers are cached and encoded,
and the service a serving process answers the query API with."""
