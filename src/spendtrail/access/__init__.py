"""Who may do what and see whose figures: pure rules, no I/O (docs/console.md).

- ``roles.py`` — the four roles and the one table of what each may do (``allowed``).
- ``scope.py`` — ``AccessScope``: the owners a user may see; ``admits`` is the rule every
  read applies (its SQL form is ``spendtrail.ledger.scoping``).
- ``principal.py`` — ``Principal``: the user a request acts for, and the checks every
  operation makes (``require``, ``require_everyone``, ``require_owner``).
- ``credentials.py`` — argon2 password hashes, API tokens and session ids (stored hashed).
- ``ratelimit.py`` — the sliding window that slows password guessing at login.
"""
