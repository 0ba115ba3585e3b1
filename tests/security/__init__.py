"""Attacks on the running bridge, one module per finding of the security review; each test
is written as the attacker would try it, through the public interfaces."""
