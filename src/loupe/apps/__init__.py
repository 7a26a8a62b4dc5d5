"""An app and what belongs to it: the app record, its indexes and label mirror, concepts, keys, feedback."""
