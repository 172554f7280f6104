"""Policies of the safe algorithms: SAC's actor and reward critics plus a critic for the constraint cost."""

from __future__ import annotations

from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.sac.policies import SACPolicy


class SACLagPolicy(SACPolicy):
    """
    :class:`~stable_baselines3.sac.policies.SACPolicy` (actor, twin reward critic and its target) plus a
    cost critic: ``n_critics`` Q-networks of the discounted constraint cost (same architecture as the
    reward critic, ``net_arch["qf"]``), its target network and its own optimiser. The networks hang off the
    policy, so ``model.save``/``load`` carry them.

    Takes :class:`~stable_baselines3.sac.policies.SACPolicy`'s arguments unchanged.
    """

    cost_critic: ContinuousCritic
    cost_critic_target: ContinuousCritic

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        if self.share_features_extractor:
            # As SAC's reward critic: reuse the actor's extractor, trained only by the actor loss.
            self.cost_critic = self.make_critic(features_extractor=self.actor.features_extractor)
            parameters = [param for name, param in self.cost_critic.named_parameters() if "features_extractor" not in name]
        else:
            self.cost_critic = self.make_critic(features_extractor=None)
            parameters = list(self.cost_critic.parameters())
        self.cost_critic_target = self.make_critic(features_extractor=None)
        self.cost_critic_target.load_state_dict(self.cost_critic.state_dict())
        self.cost_critic_target.set_training_mode(False)
        self.cost_critic.optimizer = self.optimizer_class(
            parameters,
            lr=lr_schedule(1),  # type: ignore[call-arg]
            **self.optimizer_kwargs,
        )

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)
        self.cost_critic.set_training_mode(mode)


MlpPolicy = SACLagPolicy
