"""The model lifecycle: versions, top-k, the serving registry, explaining an answer."""
