"""Study explorer: pandas frames of a stored study, terminal summaries, the HTML report, YAML
export."""

from drltune.explore.load import DEFAULT_STORAGE, history_frame, load, open_study, trials_frame

__all__ = ["DEFAULT_STORAGE", "history_frame", "load", "open_study", "trials_frame"]
