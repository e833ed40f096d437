"""Predictive lead scoring: P(outcome) learned from the log beside the rules' points.

`features` observes a profile (pure), `learn` fits and evaluates a logistic regression (pure,
numpy), `service` trains from storage and serves a profile's prediction.
"""
