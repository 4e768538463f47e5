"""`decon run`: the S3 job of one fleet node (list, shard, download, detect, upload)."""
