"""ddpm_lessons: the helper package behind the ddpm-lessons notebooks.

Every model, sampler and check the notebooks use lives here. Conventions (see DESIGN.md): paper time
indexing t = 1..T with index 0 the identity, ASCII paper symbols, float64 schedules.

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
    [DDIM]  Song, Meng, Ermon 2020, arXiv:2010.02502
    [CFG]   Ho, Salimans 2022, arXiv:2207.12598
    [SDE]   Song et al. 2021, arXiv:2011.13456
    [DSM]   Vincent 2011, Neural Computation 23(7)
    [NCSN]  Song, Ermon 2019, arXiv:1907.05600
"""

__version__ = "0.1.0"
