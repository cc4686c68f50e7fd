"""Output cut into lines as it comes, whatever its pieces."""

from trainer.console import MAX_LINE, LineCutter


def test_lines_are_cut_where_they_end_whatever_the_pieces_they_come_in():
    cutter = LineCutter("stdout")
    assert cutter.feed("epoch 1 lo", now=1.0) == []
    assert cutter.feed("ss 2.3\nepoch 2\r\npartial", now=2.0) == [
        (2.0, "stdout", "epoch 1 loss 2.3"),
        (2.0, "stdout", "epoch 2"),
    ]
    assert cutter.close(now=3.0) == [(3.0, "stdout", "partial")]


def test_bytes_cut_inside_a_character_and_a_line_longer_than_the_limit():
    cutter = LineCutter("stderr")
    text = "température ✓\n".encode()
    assert cutter.feed(text[:2], now=1.0) + cutter.feed(text[2:], now=1.0) == [(1.0, "stderr", "température ✓")]
    long = cutter.feed("x" * (2 * MAX_LINE + 5) + "\n", now=2.0)
    assert [len(line[2]) for line in long] == [MAX_LINE, MAX_LINE, 5]
