import numpy as np
import torch

from shared.visualize.reconstruction import reconstruction_panel


def test_panel_shows_masked_input_reconstruction_and_original():
    image = torch.linspace(0, 1, 2 * 32 * 32 * 32).reshape(2, 32, 32, 32)
    mask = torch.zeros(8, dtype=torch.bool)
    mask[0] = True  # the patch [:16, :16, :16] is hidden
    reconstruction = torch.full_like(image, 0.5)
    panel = reconstruction_panel(image, reconstruction, mask, 16, num_slices=3)
    assert panel.shape == (2 * 3 * 32, 3 * 32) and panel.dtype == np.uint8  # rows: 2 channels x 3 slices
    first_slice = panel[:32]  # channel 0, slice 8 of 32 (inside the hidden patch's depth)
    masked, rebuilt, original = first_slice[:, :32], first_slice[:, 32:64], first_slice[:, 64:]
    # the hidden patch (patient's left, posterior) is at the bottom right of a radiological axial picture
    assert (masked[16:, 16:] == 0).all()  # hidden: shown at the original's minimum
    np.testing.assert_array_equal(masked[:16, :16], original[:16, :16])  # visible: as given
    assert np.ptp(rebuilt[16:, 16:]) == 0 and rebuilt[-1, -1] > 0  # hidden: the (constant) prediction
    np.testing.assert_array_equal(rebuilt[:16, :16], original[:16, :16])


def test_axial_slices_are_shown_as_radiologists_view_them():
    """Anterior at the top, the patient's right on the left of the picture (RAS: x to the right, y to the front)."""
    image = torch.zeros(1, 20, 30, 8)
    image[0, 19, 0, :] = 1.0  # the patient's rightmost, most posterior column
    image[0, 0, 29, :] = 0.5  # the patient's leftmost, most anterior column
    panel = reconstruction_panel(image, image, torch.zeros(4, dtype=torch.bool), (10, 15, 8), num_slices=1)
    original = panel[:, 2 * 20:]
    assert original.shape == (30, 20)  # rows: posterior <- anterior, columns: right -> left
    assert original[-1, 0] == 255 and original[0, -1] == 128


def test_panel_of_a_2d_image_has_one_row_per_channel():
    panel = reconstruction_panel(torch.rand(3, 64, 64), torch.rand(3, 64, 64), torch.rand(16) > 0.5, 16)
    assert panel.shape == (3 * 64, 3 * 64)
