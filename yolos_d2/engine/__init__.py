from .optimizer import get_param_groups

__all__ = ["get_param_groups"]
