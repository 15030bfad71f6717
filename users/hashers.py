"""Argon2 sized for the machine the site runs on.

Django's Argon2PasswordHasher uses 100 MiB and 8 lanes per hash: on a 2-core host each hash then costs about as much
CPU as PBKDF2's million iterations and a handful of concurrent logins or imported users take hundreds of MiB. The
parameters here come from settings (ARGON2_MEMORY_KIB, ARGON2_TIME_COST, ARGON2_PARALLELISM), so an operator sizes
them to the host; Django's must_update() re-hashes a stored password on the next login whenever they change.
"""

from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher


class SizedArgon2PasswordHasher(Argon2PasswordHasher):
    # Same algorithm name as Django's, so hashes stay readable by the stock hasher and vice versa.
    @property
    def time_cost(self):
        return settings.ARGON2_TIME_COST

    @property
    def memory_cost(self):
        return settings.ARGON2_MEMORY_KIB

    @property
    def parallelism(self):
        return settings.ARGON2_PARALLELISM
