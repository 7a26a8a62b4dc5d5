"""Pure numerics of custom models: heads, training sets, blending, self-training, evaluation, advice."""
