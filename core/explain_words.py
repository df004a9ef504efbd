"""What each explanation method shows, in a sentence a clinician reads beside the map.

Kept apart from :mod:`core.explain` (the computation) so the pages and reports can show the
words without importing Captum.
"""

#: One sentence per method: what its map shows, in words for the person reading it.
METHOD_DESCRIPTIONS = {
    "gradcam": "Grad-CAM shows which regions raised the score of the answer, seen through the network's last "
               "convolution layer: coarse blocks that say where, not which pixels.",
    "guided_gradcam": "Guided Grad-CAM sharpens Grad-CAM's regions with the pixel gradients inside them, so edges "
                      "and textures within the regions that mattered stand out.",
    "integrated_gradients": "Integrated Gradients shows how much each pixel, compared with a plain grey image, "
                            "added to or took from the answer; each map is scaled on its own (the strongest 1 % "
                            "of pixels show full red), so compare patterns, not colours, between images.",
    "saliency": "Saliency shows how strongly the answer reacts to a tiny change of each pixel: quick but noisy, "
                "it marks sensitivity rather than evidence.",
    "occlusion": "Occlusion hides one small square at a time and shows how much the answer's score drops: slow "
                 "and coarse, but a direct test of what the model needs to see.",
}

#: When two methods give different maps, and what that means.
METHODS_DISAGREE = ("Methods can disagree: region methods (Grad-CAM, occlusion) and pixel methods (integrated "
                    "gradients, saliency) answer different questions, and a model that relies on texture spread "
                    "over the image gives scattered pixel maps but broad regions. Where they agree, the evidence "
                    "is stronger.")
