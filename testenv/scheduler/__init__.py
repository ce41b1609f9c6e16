"""A kube-scheduler stand-in: binds pending pods to nodes through the Kubernetes API."""

from .scheduler import DEFAULT_NAME, Scheduler, SchedulerService

__all__ = ["DEFAULT_NAME", "Scheduler", "SchedulerService"]
