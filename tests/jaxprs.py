"""Walking traced programs in tests."""


def eqns(jaxpr):
    """Every equation of a jaxpr and of the jaxprs inside it (scan bodies, custom VJPs)."""
    from jax.extend.core import jaxprs_in_params

    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jaxprs_in_params(eqn.params):
            yield from eqns(sub)
