-- Before each run: no checkpoint (and its full-page writes) left to land inside it.
CHECKPOINT;
