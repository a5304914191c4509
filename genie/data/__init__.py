"""Data: ALE collection, video ingest, the episode store and clip sampling. uint8 stays in here.

store.py    EpisodeStore (the on-disk layout) and dataset_root (opens, never collects)
writer.py   DatasetWriter: streaming, all-or-nothing dataset writes; the split by episode
collect.py  record an ALE game (policy.py plays it, games.py knows the games, actions.py classes);
            ensure_dataset collects a missing game for the commands that promise it
ingest.py   import videos, image folders and arrays (readers.py reads them)
resize.py   the one area resize every source goes through
clips.py    ClipDataset for training; frames.py the uint8 <-> float boundary and median background
"""
