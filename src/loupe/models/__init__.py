"""Models of an app: registry, training, quality, predictors (custom and General), workflows."""
