"""ibsim: a paper IB Gateway speaking the TWS API, with a simulated QQQ options market.

Start it in-process with ``IBSim(SimConfig(...))`` (``await sim.start()``) or as
the ``ibsim`` command; see ibsim/README.md.
"""

from .market import Scenario
from .sim import IBSim, SimConfig

__all__ = ["IBSim", "Scenario", "SimConfig"]
