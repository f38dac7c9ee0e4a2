"""How the zoo is trained: one record, so the manifest can pin it and `ensure_zoo` can notice a change.

The defaults serve two properties the demo search depends on: each expert masters its skill while staying
weak elsewhere, and experts stay close enough to their base that task arithmetic over them finds children
better than any parent. Measured trade-offs (pinned numerics, seed 0 unless said; the README has the zoo):
- The base sees a share of each hard skill, sized to how fast the skill is learned (sort from a sliver).
  A base that never sees a skill gives experts whose merges score ~0; one that has the skill leaves no
  expert a specialist.
- Addition reaches the base only as `add_small` (sums below 100). With the full skill at the same share the
  base learned addition or not by chance: .655, .32, .31, .36, .145 on seeds 0-4, and at .655 the sort
  expert kept .765 of it, so no merge could beat it by 0.10. Capped, the base scores .20-.40 on seeds 0-3.
- Addition is only learned reliably at lr 1e-3, and from that base it needs 600 steps: 300 left the add
  expert at .805 and its merges at .33 on addition (500: .96 and .81). The letter experts master their
  skill in 300 and stay more specialised than with more.
- Experts replay a quarter of the base mixture. Without replay they forget the other skills (to 0) and
  merges fail; with more replay they learn each other's skills, and merging has less left to add.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from tasks.zoo.skills import EASY_FORMATS, FORMATS, SKILLS, check_mixture

EASY_SHARE = 0.13
"""Weight of each of the five easy formats in the base mixture (0.65 in all)."""

DEFAULT_BASE_MIXTURE: dict[str, float] = {
    **dict.fromkeys(EASY_FORMATS, EASY_SHARE),
    "add_small": 0.25,
    "sort": 0.015,
    "reverse": 0.04,
}


Mixture = Annotated[dict[str, float], AfterValidator(check_mixture)]
"""Format name -> weight, checked when a recipe is made (not first inside a training worker)."""


class TrainingStage(BaseModel):
    """One optimisation run: its length, peak learning rate and data mixture (format name -> weight)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(gt=0)
    learning_rate: float = Field(gt=0)
    mixture: Mixture


class ZooRecipe(BaseModel):
    """Every knob of a zoo build except the seed and the list of experts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base: TrainingStage = TrainingStage(steps=600, learning_rate=3e-3, mixture=DEFAULT_BASE_MIXTURE)
    expert_steps: int = Field(default=300, gt=0)
    expert_steps_by_skill: dict[str, Annotated[int, Field(gt=0)]] = {"add": 600}
    """Steps of the experts whose skill needs another count than `expert_steps` (skill -> steps)."""
    expert_learning_rate: float = Field(default=1e-3, gt=0)
    expert_replay: float = Field(default=0.25, ge=0, lt=1)
    """Share of each expert batch drawn from the replay mixture, so experts do not forget the base."""
    expert_replay_mixture: Mixture | None = None
    """What experts replay (format name -> weight); None replays the base mixture. A knob for zoo variants
    (`tests/benchmarks/zoo_variants.py`): which skills an expert keeps decides how well three experts merge."""
    batch_size: int = Field(default=64, gt=0)
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1)
    grad_clip: float = Field(default=1.0, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)

    def expert_stage(self, skill: str) -> TrainingStage:
        """The fine-tuning stage of one expert: its skill, plus replay of the base mixture."""
        if skill not in SKILLS:
            raise ValueError(f"unknown skill {skill!r}; expected one of {SKILLS}")
        replayed = self.base.mixture if self.expert_replay_mixture is None else self.expert_replay_mixture
        mixture = _blend({skill: 1.0}, replayed, replay=self.expert_replay)
        steps = self.expert_steps_by_skill.get(skill, self.expert_steps)
        return TrainingStage(steps=steps, learning_rate=self.expert_learning_rate, mixture=mixture)

    def shortened(self, base_steps: int, expert_steps: int) -> ZooRecipe:
        """The same recipe with fewer steps (every expert `expert_steps`): for tests that need a real but fast
        build."""
        base = self.base.model_copy(update={"steps": base_steps})
        return self.model_copy(update={"base": base, "expert_steps": expert_steps, "expert_steps_by_skill": {}})

    @field_validator("expert_steps_by_skill")
    @classmethod
    def _known_skills(cls, steps: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(steps) - set(SKILLS))
        if unknown:
            raise ValueError(f"unknown skills {unknown}; expected some of {list(SKILLS)}")
        return steps


def _blend(own: Mapping[str, float], replay_mixture: Mapping[str, float], replay: float) -> dict[str, float]:
    own_total = sum(own.values())
    replay_total = sum(replay_mixture.values())
    blended = {name: 0.0 for name in FORMATS if name in own or name in replay_mixture}
    for name, weight in own.items():
        blended[name] += (1 - replay) * weight / own_total
    for name, weight in replay_mixture.items():
        blended[name] += replay * weight / replay_total
    return blended
