"""playbook stage: the versioned YAML configuration, loaded and validated with file/line errors."""

from leadloop.playbook.load import diff_playbooks, load_playbook, parse_playbook, playbook_digest
from leadloop.playbook.model import Playbook, PlaybookWarning, WebhookEndpoint

__all__ = [
    "Playbook",
    "PlaybookWarning",
    "WebhookEndpoint",
    "diff_playbooks",
    "load_playbook",
    "parse_playbook",
    "playbook_digest",
]
