"""What a run leaves behind and what is done with it: the ``bench.results/1`` schema and its one
writer and reader, the comparability rule, compare, claims, robustness summaries, the terminal
report and publishing."""
