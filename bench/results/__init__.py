"""What a run leaves behind and what is done with it.

- ``schema``: the names of ``bench.results/1`` (schema string, file names); ``results.schema.json``
  documents every field of ``results.json``;
- ``writer``: the one writer; ``reader``: the one reader (:class:`~bench.results.reader.Run`,
  finding runs, the safe-reading rules); ``validation``: the schema check;
- ``protocol``: the one comparability rule (which protocol choice affects which metric);
- ``compare``, ``claims``, ``robustness``, ``report``, ``publish``: what is done with runs.
"""
