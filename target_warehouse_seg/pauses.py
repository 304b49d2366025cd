"""Growing pauses between tries of something that another party holds up for a while (a lock another
session holds, a server that is restarting), within a budget of seconds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Pauses:
    """``first`` seconds, then twice as long each time, at most ``longest``; once the pauses (and what
    each try itself waited) reach ``budget`` seconds, ``next`` gives None: time to give up."""

    first: float
    longest: float
    budget: float
    tries: int = 0
    spent: float = 0.0

    def next(self, waited_by_try: float = 0.0) -> float | None:
        if self.spent >= self.budget:
            return None
        pause = min(self.longest, self.first * 2**self.tries)
        self.tries += 1
        self.spent += pause + waited_by_try
        return pause

    def reset(self) -> None:
        """After a success: the next trouble starts from the first pause again."""
        self.tries, self.spent = 0, 0.0
