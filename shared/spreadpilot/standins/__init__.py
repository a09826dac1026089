"""Local stand-ins for hosted services that cannot run here.

Each speaks the real service's wire protocol (so the production client code and
libraries run unchanged against it), records what it received, and can fail on
purpose. Used by the tests and the demo; never in production.
"""

from spreadpilot.standins._http import FaultInjector, RecordedRequest, Reply, StandInServer
from spreadpilot.standins.sendgrid import SendGridStandIn, SentMail
from spreadpilot.standins.sheets import SheetsStandIn
from spreadpilot.standins.telegram import SentMessage, TelegramStandIn

__all__ = [
    "FaultInjector",
    "RecordedRequest",
    "Reply",
    "SendGridStandIn",
    "SentMail",
    "SentMessage",
    "SheetsStandIn",
    "StandInServer",
    "TelegramStandIn",
]
