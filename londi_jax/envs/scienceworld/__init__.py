"""ScienceWorld: the simulator's JVM behind the text-environment protocol (`env`), candidate
actions from templates and the objects in view (`candidates`), the prompts LM policies read
(`prompts`) and demonstrations from gold paths (`gold`)."""
