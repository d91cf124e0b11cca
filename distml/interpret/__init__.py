"""Model explanations: SHAP values computed where the data lives (:mod:`.explain`)."""

from distml.interpret.explain import write_shap

__all__ = ["write_shap"]
