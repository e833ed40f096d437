"""playbook stage."""
