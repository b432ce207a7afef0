"""Datasets and stored features: user data folders, the built-in scenes dataset, readers of the
public benchmark formats, and the feature store that training reads."""
