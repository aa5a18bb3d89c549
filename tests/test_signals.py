"""learngene.signals: SIGTERM raises or sets a flag while a block runs, and the previous handler comes back."""
import os
import signal
import threading
import time

import pytest

from learngene.signals import Terminated, sigterm_raises, sigterm_sets_flag


def deliver_sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)  # the handler runs between bytecodes of the main thread, well before this ends


def test_sigterm_raises_the_given_exception_then_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_raises():
        deliver_sigterm()
    with pytest.raises(KeyboardInterrupt, match="^driver stopped$") as raised, \
            sigterm_raises(lambda: KeyboardInterrupt("driver stopped")):
        deliver_sigterm()
    assert type(raised.value) is KeyboardInterrupt  # not Terminated: a Ctrl-C's exit code
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_sets_the_flag_and_the_block_goes_on():
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_sets_flag() as stop:
        assert not stop.is_set()
        deliver_sigterm()
        assert stop.is_set()
    assert signal.getsignal(signal.SIGTERM) is before


def test_outside_the_main_thread_the_handler_is_left_alone():
    seen = []

    def block():
        with sigterm_raises(), sigterm_sets_flag() as stop:
            seen.append((signal.getsignal(signal.SIGTERM), stop.is_set()))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=block)
    thread.start()
    thread.join()
    assert seen == [(before, False)]
